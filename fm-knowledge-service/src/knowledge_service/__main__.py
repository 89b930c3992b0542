from fm_common.app import serve
from fm_common.settings import load_settings
from knowledge_service.config import Settings

serve("knowledge_service.main:create_app", load_settings(Settings), default_port=8004)
