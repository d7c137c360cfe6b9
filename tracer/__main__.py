from uvmtrace.tracer.cli import main

main()
