"""Screenshot a view of the browse page with headless Chromium (how docs/*.png are made).

    .venv/bin/python tools/screenshot_page.py --url http://127.0.0.1:8600/ --view '#/user/10' \
        --out docs/browse-page.png
    .venv/bin/python tools/screenshot_page.py --view '#/for-you' --ratings 50=5,100=2,1=4 \
        --out docs/for-you.png

``--ratings`` stores a visitor's ratings in the page's localStorage (browse.js RATINGS_KEY)
before the view is opened, as if they had been given with the page's stars.

The similarity service must be running at ``--url``. Uses Debian's chromium + chromedriver
(``make install`` sets them up), like tests/test_browse_page.py; waits until the page says
the view is rendered (browse.js sets ``data-state="ready"`` on ``#view``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

RATINGS_KEY = "movielens-ratings"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8600/", help="the page (default: %(default)s)")
    parser.add_argument("--view", default="#/", help="hash route, e.g. '#/user/10' or '#/movie/1' (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--size", default="1400,1000", help="window width,height (default: %(default)s)")
    parser.add_argument("--ratings", default="", metavar="ID=STARS,...",
                        help="a visitor's ratings (1..5) for the page to keep, e.g. 260=5,1196=4 (default: none)")
    args = parser.parse_args(argv)
    try:
        ratings = {int(movie): int(stars) for movie, stars in
                   (pair.split("=") for pair in args.ratings.split(",") if pair.strip())}
    except ValueError:
        parser.error(f"--ratings: expected ID=STARS pairs separated by commas, got {args.ratings!r}")
    if any(not 1 <= stars <= 5 for stars in ratings.values()):
        parser.error("--ratings: stars are 1..5")

    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("error: chromium and chromedriver must be on PATH (make install: tools/provision_browser.sh)",
              file=sys.stderr)
        return 2
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={args.size}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        if ratings:  # the page's own storage (browse.js RATINGS_KEY), set on its origin first
            driver.get(args.url.rstrip("/") + "/")
            driver.execute_script("window.localStorage.setItem(arguments[0], arguments[1]);",
                                  RATINGS_KEY, json.dumps({str(k): v for k, v in ratings.items()}))
        driver.get(args.url.rstrip("/") + "/" + args.view)
        if ratings:  # a hash-only move keeps the document: load it anew, reading the stored ratings
            driver.refresh()
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "view").get_attribute("data-state") == "ready"
            and d.find_element(By.ID, "versions").get_attribute("data-model-version"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
