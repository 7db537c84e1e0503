// Validates AsyncAPI documents with the official parser (@asyncapi/parser, installed by
// `make npm` from package-lock.json), with its recommended ruleset. For each file given,
// prints one JSON line: {"file", "parsed", "diagnostics": [{severity, code, message, path}]}
// where severity is 0 error, 1 warning, 2 information, 3 hint. Exit code 0 unless a file
// could not be read. test_asyncapi.py (beside it) runs it on every document.
"use strict";
const { readFile } = require("node:fs/promises");
const { Parser } = require("@asyncapi/parser");

const SEVERITY = ["error", "warning", "information", "hint"];

async function main(files) {
  const parser = new Parser();
  for (const file of files) {
    const text = await readFile(file, "utf8");
    const { document, diagnostics } = await parser.parse(text, { source: file });
    const found = diagnostics.map((d) => ({
      severity: SEVERITY[d.severity] ?? String(d.severity),
      code: String(d.code),
      message: d.message,
      path: (d.path || []).join("/"),
    }));
    process.stdout.write(JSON.stringify({ file, parsed: document !== undefined, diagnostics: found }) + "\n");
  }
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(2);
});
