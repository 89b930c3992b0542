from agent_service.config import Settings
from fm_common.app import serve
from fm_common.settings import load_settings

serve("agent_service.main:create_app", load_settings(Settings), default_port=8006)
