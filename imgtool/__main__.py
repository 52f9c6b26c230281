from imgtool.cli.main import main

main()
