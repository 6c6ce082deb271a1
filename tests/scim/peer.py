"""The real peer: scim2-tester (pinned in tests/requirements.txt) run against a Countersign
server's /scim/v2. Prints one JSON line per check; tests/scim.rs decides what fails."""

import json
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server

http = Client(base_url=sys.argv[1], headers={"Authorization": f"Bearer {os.environ['SCIM_TOKEN']}"})
for result in check_server(SyncSCIMClient(http)):
    print(
        json.dumps(
            {
                "status": result.status.name,
                "title": result.title,
                "reason": result.reason or "",
                "resource_type": result.resource_type or "",
            }
        )
    )
