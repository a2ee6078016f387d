"""Reading tables, splitting them and preparing them for a network.

The steps from a DataFrame to model-ready arrays with their fitted preprocessing.
"""
