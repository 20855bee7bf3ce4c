"""Where orders go: simulated fills and costs, the paper venue, live venues and their safety rules."""
