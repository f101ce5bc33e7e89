from medseg_gui.gui.app import main

raise SystemExit(main())
