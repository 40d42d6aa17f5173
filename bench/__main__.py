from .ratio import main

main()
