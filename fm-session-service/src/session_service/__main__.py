from fm_common.app import serve
from fm_common.settings import load_settings
from session_service.config import Settings

serve("session_service.main:create_app", load_settings(Settings), default_port=8002)
