from medseg_gui.cli import main

if __name__ == "__main__":  # spawned DataLoader workers import this module too
    raise SystemExit(main())
