"""Tasks for this repository: the session collection users import, and `inv demo`."""

from invoke import Collection

from tally_tasks.config import DEFAULTS
from tally_tasks.demo import demo
from tally_tasks.tasks import session

ns = Collection(demo, session)
ns.configure({"tally": DEFAULTS})
