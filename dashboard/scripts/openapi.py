"""Print the API's OpenAPI document (the input of `npm run types`), without Redis or a server.

    python dashboard/scripts/openapi.py > dashboard/openapi.json
"""

from __future__ import annotations

import json
import sys

from conveyor import Conveyor
from conveyor.api.factory import create_app


def main() -> None:
    app = create_app(Conveyor(), open_store=False)
    json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
