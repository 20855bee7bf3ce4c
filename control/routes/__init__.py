"""The HTTP routes by area; each one translates a request into one ``SystemClient`` call and back."""

from fastapi import APIRouter

from control.routes import controls, markets, records, risk, strategies, system, trading

ROUTERS: list[APIRouter] = [system.pages, system.router, controls.router, strategies.router, trading.router,
                            risk.router, records.router, markets.router]
