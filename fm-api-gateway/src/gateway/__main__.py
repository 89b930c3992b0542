from fm_common.app import serve
from fm_common.settings import load_settings
from gateway.config import Settings

serve("gateway.main:create_app", load_settings(Settings), default_port=8000)
