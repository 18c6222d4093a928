"""The remote CLI: `metalstream` commands that drive a running service over its REST API.

profile.py finds the service's URL and token (options > environment > profile file), client.py talks
HTTP and turns failures into errors that name the URL and say what to do, output.py prints results
as table/json/yaml/value, watch.py follows deployments with progress bars, and the *_cli.py modules
hold the click commands (registered in metalstream/cli.py).
"""
