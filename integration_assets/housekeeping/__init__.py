"""Housekeeping: pruning the bookkeeping tables past their retention (``retention``)."""
