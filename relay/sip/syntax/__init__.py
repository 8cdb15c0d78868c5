"""SIP syntax: the grammar, URIs, header fields, messages and their parser (RFC 3261 §7, §19, §20, §25)."""
