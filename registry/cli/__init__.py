"""The `compeft-hub` command (`main.py`: serve, db, user, token, fsck, reembed; `client.py`,
`experts.py` and `compose.py`: the client commands). Each command imports what it uses when it runs, so `--help` and the client
commands start without the server's stack; `extras.py` says which extra a missing part needs."""
