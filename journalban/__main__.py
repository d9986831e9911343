from journalban.cli import main

main()
