"""Options of the browser tests."""

import os


def pytest_addoption(parser):
    parser.addoption(
        "--update-screenshots", action="store_true",
        default=os.environ.get("TRACEMARK_UPDATE_SCREENSHOTS") == "1",
        help="copy the five report screenshots into docs/report/ (also: TRACEMARK_UPDATE_SCREENSHOTS=1)")
