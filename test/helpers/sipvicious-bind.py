"""
Run a SIPVicious tool (svwar, svcrack) with its `-b ADDR` option honoured:

    /usr/bin/python3 sipvicious-bind.py /usr/bin/svwar -b 127.0.0.2 [svwar options] target

(with the interpreter of the tool's own #! line: the package is installed for it)

SIPVicious 0.3.3 (Debian) parses -b/--bindingip but never hands it to the scanner, whose UDP socket
then binds 0.0.0.0, and the kernel sends to 127.0.0.1 from 127.0.0.1. This wrapper redirects the
tool's wildcard UDP bind to ADDR and runs the tool's own script unchanged otherwise.
"""
import os
import runpy
import socket
import sys

script, args = os.path.realpath(sys.argv[1]), sys.argv[2:]
# as when the (symlinked) script runs itself: its directory holds the sipvicious package
sys.path.insert(0, os.path.dirname(script))
addr = args[args.index('-b') + 1] if '-b' in args else None
if addr is not None:
    _bind = socket.socket.bind

    def bind(self, address):
        if isinstance(address, tuple) and address[0] in ('', '0.0.0.0'):
            address = (addr,) + tuple(address[1:])
        return _bind(self, address)

    socket.socket.bind = bind
sys.argv = [script] + args
runpy.run_path(script, run_name='__main__')
