"""The `compeft-hub` command (`main.py`: serve, db, user, fsck, reembed; `tokens.py`: token;
`client.py`, `experts.py` and `compose.py`: the client commands; `database.py`: the operator
commands' database access). Each command imports what it uses when it runs, so `--help` and the
client commands start without the server's stack; `extras.py` says which extra a missing part
needs."""
