from ecgexp.commands.train import main

main()
