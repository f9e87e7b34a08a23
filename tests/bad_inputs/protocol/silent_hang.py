# Prints nothing, never ends: only the trial timeout stops it.
import time; time.sleep(600)
