from pullctl.cli.main import main

main()
