"""The services: pseudo-users (NickServ, ChanServ) that answer PRIVMSG (issue #14)."""
