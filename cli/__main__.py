from uvmtrace.cli.main import main

main()
