from bandit.cli import main

main()
