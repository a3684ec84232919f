from mmfc.console import main

raise SystemExit(main())
