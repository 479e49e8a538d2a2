"""Run the benchmark: ``python -m bench [--quick] [--kubeconfig FILE]``, or ``--compare reloader``; prints a table."""

import sys

if "--compare" in sys.argv:
    from bench.compare import main as compare

    compare(sys.argv[1:])
else:
    from bench.run import main

    main()
