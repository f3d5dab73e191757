from jitctl.cli.main import main

main()
