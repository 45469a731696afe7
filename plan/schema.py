"""Every table of the application: the engine's and the plan's (Alembic and tests read this metadata)."""
from engine.schema import MODULES as ENGINE_MODULES
from engine.schema import Base
from plan.indicators import models as indicator_models
from plan.leads import models as lead_models
from plan.ledger import models as ledger_models
from plan.meetings import models as meeting_models
from plan.projects import models as project_models
from plan.reports import models as report_models

MODULES = (*ENGINE_MODULES, indicator_models, lead_models, ledger_models, meeting_models, project_models, report_models)

__all__ = ["MODULES", "Base"]
