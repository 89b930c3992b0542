from fm_common.app import serve
from fm_common.settings import load_settings
from gateway.config import Settings
from gateway.main import server_options

settings = load_settings(Settings)
serve("gateway.main:create_app", settings, default_port=8000, **server_options(settings))
