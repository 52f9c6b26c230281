from imgtool.cli import main

main()
