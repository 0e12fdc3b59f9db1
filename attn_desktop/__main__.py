from attn_desktop.cli import main

raise SystemExit(main())
