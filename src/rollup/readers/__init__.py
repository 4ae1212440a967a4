"""Reading bars and rejects out of the warehouse: frames, charts, exports."""
