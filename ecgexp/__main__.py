from ecgexp.cli import main

main()
