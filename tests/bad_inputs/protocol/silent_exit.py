# Prints nothing, exits 0.
