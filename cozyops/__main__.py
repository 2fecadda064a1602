from cozyops.cli import main

main()
