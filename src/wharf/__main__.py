from wharf.cli import main

main()
