# Bytes that are not UTF-8 on stdout: a log line, then a protocol line with an invalid byte.
import sys
sys.stdout.buffer.write(b"\x80\x81\xfe\xff" * 1024 + b"\n" + b"{\"report\": {\"step\": 1, \"value\": \xc3\x28}}\n")
sys.stdout.flush()
import time; time.sleep(30)
