"""Histories -> scores -> top-k lists: the scorer, fusion with item-to-item signals, filters, the repeat-purchase rule, recommend's lists and submissions."""
