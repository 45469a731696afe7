"""Every table of the workflow engine: import this module to register them all on `Base.metadata`."""
from engine.audit import models as audit_models
from engine.deadlines import models as deadline_models
from engine.documents import models as document_models
from engine.notify import models as notify_models
from engine.org import models as org_models
from engine.org import sso_models, token_models
from engine.orm import Base
from engine.runtime import message_models
from engine.runtime import models as runtime_models
from engine.tasks import collab_models
from engine.tasks import models as task_models

MODULES = (audit_models, deadline_models, document_models, notify_models, org_models, sso_models, token_models,
           runtime_models, collab_models, task_models, message_models)

__all__ = ["MODULES", "Base"]
