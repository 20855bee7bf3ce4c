"""The signal path shared by backtest and live: the backtest engine, the strategy host, signals to orders."""
