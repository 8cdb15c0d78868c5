"""RFC 3261 §25 grammar fragments as named regular-expression strings.

Theory of operation:

1. Each constant is a *string* (not a compiled pattern) holding one ABNF rule, with the rule
   in a comment beside it. Modules compose them and compile what they need once, at import.
2. The patterns run over header text that the parser has already unfolded (RFC 3261 §7.3.1):
   LWS therefore never contains CRLF here and is written ``[ \\t]``.
3. No pattern nests unbounded repetitions over overlapping classes, so matching stays linear
   in the input length even on hostile input (the fuzz tests feed ``hypothesis.binary()``).
4. Text comes from bytes decoded as UTF-8 with ``surrogateescape``: invalid bytes become
   lone surrogates (U+DC80-U+DCFF). Only a quoted-string accepts them, where the grammar wants
   UTF8-NONASCII: older PBXs send Latin-1 display names (``"café"`` with é as the one byte
   E9), and refusing the call for it helps nobody. Tokens, URIs and the rest still refuse them.
"""

from __future__ import annotations

# alphanum = ALPHA / DIGIT
ALPHANUM = r"[A-Za-z0-9]"

# LWS = [*WSP CRLF] 1*WSP ; linear whitespace (folding already undone)
LWS = r"[ \t]+"

# SWS = [LWS] ; sep whitespace
SWS = r"[ \t]*"

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"

# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"

# Method = INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# extension-method = token
METHOD = TOKEN

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION = r"[Ss][Ii][Pp]/[0-9]{1,5}\.[0-9]{1,5}"

# Status-Code = 3DIGIT (extension-code = 3DIGIT; classes 1xx to 6xx, §7.2)
STATUS_CODE = r"[1-6][0-9]{2}"

# callid = word [ "@" word ]
CALL_ID = rf"{WORD}(?:@{WORD})?"

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method  (the number fits 32 bits, §8.1.1.5)
CSEQ = rf"([0-9]{{1,10}}){LWS}({METHOD})"

# escaped = "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"

# unreserved = alphanum / mark
# mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
UNRESERVED = r"[A-Za-z0-9\-_.!~*'()]"

# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER = rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|{ESCAPED})+"

# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|{ESCAPED})*"

# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
# (liberal: "_" is accepted and label shapes are not policed, as deployed stacks send both)
HOSTNAME = r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.?"

# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
IPV4_ADDRESS = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"

# IPv6reference = "[" IPv6address "]"   (shape only; the address is checked by ipaddress)
IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]{2,45}\]"

# host = hostname / IPv4address / IPv6reference
HOST = rf"(?:{IPV6_REFERENCE}|{HOSTNAME})"

# port = 1*DIGIT
PORT = r"[0-9]{1,5}"

# paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAMCHARS = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|{ESCAPED})+"

# hname = 1*( hnv-unreserved / unreserved / escaped ) ; hvalue = *( same )
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNV_CHARS = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{ESCAPED})*"

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII  (and, leniently, bytes that are not
#          UTF-8: rule 4)
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING = (
    r'"(?:[\t !#-\[\]-~\u0080-\ud7ff\udc80-\udcff\ue000-\U0010ffff]'
    r'|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
)

# gen-value = token / host / quoted-string   (host adds ":" "[" "]" for IPv6 and ports)
GEN_VALUE = rf"(?:{QUOTED_STRING}|[A-Za-z0-9\-.!%*_+`'~:\[\]]+)"

# generic-param = token [ EQUAL gen-value ] ; EQUAL = SWS "=" SWS ; SEMI = SWS ";" SWS
GENERIC_PARAM = rf"{SWS};{SWS}({TOKEN})(?:{SWS}={SWS}({GEN_VALUE}))?{SWS}"

# sent-protocol = protocol-name SLASH protocol-version SLASH transport ; SLASH = SWS "/" SWS
# sent-by = host [ COLON port ] ; COLON = SWS ":" SWS
VIA_PARM_HEAD = rf"{SWS}({TOKEN}){SWS}/{SWS}({TOKEN}){SWS}/{SWS}({TOKEN}){LWS}({HOST})(?:{SWS}:{SWS}({PORT}))?{SWS}"

# display-name = *(token LWS) / quoted-string
DISPLAY_TOKENS = rf"{TOKEN}(?:{LWS}{TOKEN})*"
