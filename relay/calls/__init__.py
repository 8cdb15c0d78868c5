"""The relay's calls: what to do with a SIP call, from decision to BYE (see ``incoming``)."""
