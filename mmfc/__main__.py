from mmfc.cli import main

raise SystemExit(main())
