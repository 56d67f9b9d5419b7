"""Reading delivered export files in bounded chunks, every record accounted for.

``source`` inspects a file and reads it (``inspect``, ``SourceFile``); ``formats`` names the formats and
packings, ``unpack`` opens gzip and zip files, ``encoding`` tells UTF-8 from the fallback encoding, one
reader per format (``csv_reader``, ``json_reader``, ``parquet_reader``), and ``hashing`` gives a file its
identity without importing pandas or Arrow (this package imports nothing on its own for that reason).
"""
