"""The synthesis run: the loop (measure the gap, plan proposals, realize candidates, calibrate), its finish, and
partitions of a zoned project run in a process pool or on Dask."""
