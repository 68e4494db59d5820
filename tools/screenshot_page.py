"""Screenshot a view of the browse page with headless Chromium (how docs/browse-page.png is made).

    .venv/bin/python tools/screenshot_page.py --url http://127.0.0.1:8600/ --view '#/user/10' \
        --out docs/browse-page.png

The similarity service must be running at ``--url``. Uses Debian's chromium + chromedriver
(``make install`` sets them up), like tests/test_browse_page.py; waits until the page says
the view is rendered (browse.js sets ``data-state="ready"`` on ``#view``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8600/", help="the page (default: %(default)s)")
    parser.add_argument("--view", default="#/", help="hash route, e.g. '#/user/10' or '#/movie/1' (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--size", default="1400,1000", help="window width,height (default: %(default)s)")
    args = parser.parse_args(argv)

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
        driver.get(args.url.rstrip("/") + "/" + args.view)
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
