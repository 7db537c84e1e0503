from deploy.local.stack import main

main()
