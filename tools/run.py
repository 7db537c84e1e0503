"""``make run``: the main job. A fresh local stack (Kafka, mongod, the four services and the
provider stand-ins, in the foreground: ``deploy.local``), the simulated programme played on
it (``tools.simulate``), the registry's funnel beside what the simulator intended once it
has settled, then where everything is; the stack stays up until Ctrl-C (``--exit``: stop
after the tally).

The tools compose the two here, so the infrastructure (``deploy/``) knows nothing of them.
"""

from __future__ import annotations

import argparse
import asyncio

from deploy.local.launcher import say
from deploy.local.stack import add_port_options, announce, fresh_stack, wait_for_signal
from shared.kafka import KafkaAccess
from tools.simulate import print_funnel, settled_funnel, simulate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.run", description=__doc__)
    add_port_options(parser)
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--exit", action="store_true", help="stop after the tally")
    args = parser.parse_args()
    with fresh_stack(args) as env:
        say(f"simulating {args.participants} participants through the 7P")
        result = asyncio.run(
            simulate(KafkaAccess.from_env(env), participants=args.participants, seed=args.seed)
        )
        funnel = settled_funnel(env["REGISTRY_URL"], result.intended, env["JAKPRENEUR_OPS_TOKEN"])
        print_funnel(result, funnel)
        announce(env)
        say('another role: jakpreneur token --role kota --city "Jakarta Selatan"')
        if args.exit:
            return
        say("stack keeps running; Ctrl-C stops it")
        wait_for_signal()


if __name__ == "__main__":
    main()
