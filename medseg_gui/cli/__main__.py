from medseg_gui.cli import main

raise SystemExit(main())
