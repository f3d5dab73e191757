from jitctl.cli.launch import main

main()
