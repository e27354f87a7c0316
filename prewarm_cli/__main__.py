from prewarm_cli.cli import main

main()
